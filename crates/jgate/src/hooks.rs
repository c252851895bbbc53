//! The receiver of the Jenkins Notification plugin: `POST /hooks/jenkins/<controller>/<secret>`
//! (docs/events.md). The checks, the counting and the event bus are `Gate::receive_hook`'s; this
//! module only speaks HTTP: the body is read within `gate::events::MAX_PAYLOAD`, and each outcome
//! is one status — 202 accepted, 404 for an unknown controller or a wrong secret alike, 413 over
//! the size limit, 400 malformed, 408 for a body not sent within 10 s, 503 when the store cannot
//! take it. Answers quote nothing from the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gate::Gate;
use gate::events::{HookOutcome, MAX_PAYLOAD};

pub const PREFIX: &str = "/hooks";

/// The longest the receiver waits for a payload's bytes.
const READ_BODY: std::time::Duration = std::time::Duration::from_secs(10);

/// This process's answers, by kind (`GET /hooks/stats`; the store keeps them per controller for
/// `jgate controller hook NAME --stats`). No names: the page needs no key.
#[derive(Default)]
struct Totals {
    accepted: AtomicU64,
    not_found: AtomicU64,
    too_large: AtomicU64,
    malformed: AtomicU64,
    unavailable: AtomicU64,
}

#[derive(Clone)]
struct Hooks {
    gate: Arc<Gate>,
    totals: Arc<Totals>,
}

pub fn routes(gate: Arc<Gate>) -> Router {
    let state = Hooks { gate, totals: Arc::default() };
    Router::new().route("/jenkins/{controller}/{secret}", post(receive)).route("/stats", get(stats)).with_state(state)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn receive(
    State(Hooks { gate, totals }): State<Hooks>,
    Path((controller, secret)): Path<(String, String)>,
    body: Body,
) -> Response {
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    // One byte over the limit is enough to know it is over. A sender that trickles its body is
    // not waited for past READ_BODY (the plugin sends a few KiB at once).
    let Ok(read) = tokio::time::timeout(READ_BODY, axum::body::to_bytes(body, MAX_PAYLOAD + 1)).await else {
        count(&totals.malformed);
        return text(StatusCode::REQUEST_TIMEOUT, "the payload did not arrive in time\n");
    };
    let bytes = read.ok();
    let outcome = gate.receive_hook(&controller, &secret, bytes.as_deref()).await;
    match outcome {
        HookOutcome::Accepted(e) => {
            count(&totals.accepted);
            tracing::debug!(controller = %e.controller, number = e.number, phase = e.phase.as_str(), "build event");
            text(StatusCode::ACCEPTED, "accepted\n")
        }
        HookOutcome::NotFound => {
            count(&totals.not_found);
            text(StatusCode::NOT_FOUND, "Not Found\n")
        }
        HookOutcome::TooLarge => {
            count(&totals.too_large);
            text(StatusCode::PAYLOAD_TOO_LARGE, "the payload is over jgate's limit of 64 KiB\n")
        }
        HookOutcome::Malformed(e) => {
            count(&totals.malformed);
            (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
        }
        HookOutcome::Unavailable(e) => {
            count(&totals.unavailable);
            tracing::error!(error = %e, "could not take a build event");
            let mut r =
                text(StatusCode::SERVICE_UNAVAILABLE, "jgate cannot store the event now; send it again later\n");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

async fn stats(State(Hooks { totals, .. }): State<Hooks>) -> Response {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let v = serde_json::json!({
        "accepted": get(&totals.accepted),
        "refused_not_found": get(&totals.not_found),
        "refused_too_large": get(&totals.too_large),
        "refused_malformed": get(&totals.malformed),
        "unavailable": get(&totals.unavailable),
    });
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
