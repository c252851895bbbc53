//! The Audit page: the plain-English trail newest first, with filters (agent, controller,
//! operation, allowed/denied, time range, free text), a banner with the chain's verification,
//! live updates by server-sent events and an export as JSON lines. Denials stand out.
//!
//! Live updates poll the store for records after the last sequence number the page has (once a
//! second), so they show what every replica writes. The stream checks the session every few
//! seconds without counting as activity: a forgotten page does not keep its session alive.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gate::audit::Record;
use gate::store::{AuditFilter, now_ms};
use serde::Serialize;

use super::{Console, SESSION_COOKIE, cookie, say};

/// Rows on the page (the export has every matching record).
const PAGE_ROWS: usize = 200;
/// How often the live stream asks the store for new records.
const POLL: Duration = Duration::from_secs(1);
/// How often the live stream checks that its session is still valid (in polls).
const SESSION_CHECK_POLLS: u32 = 5;

pub fn routes() -> Router<Console> {
    Router::new().route("/audit", get(page)).route("/audit/events", get(events)).route("/audit/export", get(export))
}

#[derive(serde::Deserialize, Default, Clone, Serialize)]
struct Filters {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    controller: String,
    #[serde(default)]
    operation: String,
    /// "", "allowed" or "denied".
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// Free text, matched in the sentence (case-insensitive).
    #[serde(default)]
    q: String,
    /// For the live stream: records after this sequence number.
    #[serde(default)]
    after: Option<i64>,
}

impl Filters {
    fn store_filter(&self) -> Result<AuditFilter, String> {
        let now = now_ms();
        let time = |s: &str, what: &str| -> Result<Option<i64>, String> {
            match s.trim() {
                "" => Ok(None),
                t => crate::admin::parse_time(t, now).map(Some).map_err(|e| format!("{what}: {e}")),
            }
        };
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(AuditFilter {
            agent: opt(&self.agent),
            controller: opt(&self.controller),
            operation: opt(&self.operation),
            allowed: match self.outcome.as_str() {
                "allowed" => Some(true),
                "denied" => Some(false),
                _ => None,
            },
            since_ms: time(&self.since, "Since")?,
            until_ms: time(&self.until, "Until")?,
            after_seq: self.after,
            limit: None,
        })
    }

    fn keeps(&self, r: &Record) -> bool {
        let q = self.q.trim().to_lowercase();
        q.is_empty() || r.sentence.to_lowercase().contains(&q)
    }
}

/// A record as a row shows it.
#[derive(Serialize)]
struct Row {
    seq: i64,
    time: String,
    mark: &'static str,
    denied: bool,
    sentence: String,
    agent: String,
    controller: String,
    operation: String,
    surface: &'static str,
}

fn row(r: &Record) -> Row {
    let mark = crate::admin::mark(r);
    Row {
        seq: r.seq,
        time: crate::admin::format_time(r.entry.time_ms),
        mark,
        denied: mark == "DENIED",
        sentence: r.sentence.clone(),
        agent: r.entry.agent.clone(),
        controller: r.entry.controller.clone(),
        operation: r.entry.operation.clone(),
        surface: r.entry.surface.as_str(),
    }
}

async fn page(State(console): State<Console>, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let gate = console.gate();
    let (rows, last_seq, error) = match f.store_filter() {
        Err(msg) => (Vec::new(), 0, Some(msg)),
        Ok(filter) => match newest_rows(gate, &filter, &f).await {
            Ok((rows, last)) => (rows, last, None),
            Err(e) => (Vec::new(), 0, Some(say(&e))),
        },
    };
    let verified = verification(&console).await;
    let query = serde_urlencoded(&f);
    console.render(
        "audit.html",
        Some(&authed),
        minijinja::context! {
            nav => "audit", rows => rows, f => f, last_seq => last_seq, error => error,
            verified => verified.0, verify_text => verified.1, query => query, shown => PAGE_ROWS,
        },
    )
}

/// The newest records the filters keep (at most [`PAGE_ROWS`]), newest first, read backwards from
/// the end of the log page by page (so a long log costs what is shown), and the sequence number
/// the live stream continues after: the log's newest when the page was read.
async fn newest_rows(gate: &gate::Gate, filter: &AuditFilter, f: &Filters) -> Result<(Vec<Row>, i64), gate::GateError> {
    let newest = AuditFilter { limit: Some(1), ..AuditFilter::default() };
    let mut last = gate.audit_newest(&newest, None).await?.first().map_or(0, |r| r.seq);
    let batch_filter = AuditFilter { limit: Some(PAGE_ROWS as i64), ..filter.clone() };
    let mut rows = Vec::new();
    let mut before = None;
    loop {
        let batch = gate.audit_newest(&batch_filter, before).await?;
        let Some(oldest) = batch.last().map(|r| r.seq) else { break };
        last = last.max(batch.first().map_or(0, |r| r.seq));
        rows.extend(batch.iter().filter(|r| f.keeps(r)).map(row));
        if rows.len() >= PAGE_ROWS || batch.len() < PAGE_ROWS {
            break;
        }
        before = Some(oldest);
    }
    rows.truncate(PAGE_ROWS);
    Ok((rows, last))
}

/// How long a verification of the chain is shown before it is run again (it reads the whole
/// log): at least this, and at least [`VERIFY_COST_FACTOR`] times what the last one took, so a
/// long log is not verified over and over while the page is open.
const VERIFY_REUSE: Duration = Duration::from_secs(10);
const VERIFY_COST_FACTOR: u32 = 20;

/// The chain's state: it verifies, or the first bad record.
async fn verification(console: &Console) -> (bool, String) {
    let cached = console.0.verified.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((until, ok, text)) = cached
        && std::time::Instant::now() < until
    {
        return (ok, text);
    }
    let started = std::time::Instant::now();
    let (ok, text) = match console.gate().verify_audit(&[]).await {
        Ok(Ok(n)) => {
            (true, format!("The audit chain verifies: {n} records, none edited, missing, inserted or reordered."))
        }
        Ok(Err(e)) => (false, format!("The audit chain does NOT verify: {e}")),
        Err(e) => (false, format!("The audit chain could not be checked: {e}")),
    };
    let reuse = VERIFY_REUSE.max(started.elapsed() * VERIFY_COST_FACTOR);
    let until = std::time::Instant::now() + reuse;
    *console.0.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some((until, ok, text.clone()));
    (ok, text)
}

/// The filters as a query string (for the live stream and the export).
fn serde_urlencoded(f: &Filters) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("agent", &f.agent),
        ("controller", &f.controller),
        ("operation", &f.operation),
        ("outcome", &f.outcome),
        ("since", &f.since),
        ("until", &f.until),
        ("q", &f.q),
    ] {
        if !v.trim().is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// Server-sent events: each new record matching the filters as a `record` event (JSON of a row).
async fn events(State(console): State<Console>, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let token = match console.authed(&headers).await {
        Ok(_) => cookie(&headers, SESSION_COOKIE).unwrap_or_default(),
        Err(_) => return (StatusCode::UNAUTHORIZED, "log in to the console first").into_response(),
    };
    let filter = match f.store_filter() {
        Ok(x) => x,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    struct St {
        console: Console,
        token: String,
        filter: AuditFilter,
        f: Filters,
        polls: u32,
        pending: std::collections::VecDeque<Event>,
        ended: bool,
    }
    let start = St { console, token, filter, f, polls: 0, pending: Default::default(), ended: false };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(ev), st));
            }
            if st.ended {
                return None;
            }
            tokio::time::sleep(POLL).await;
            st.polls += 1;
            if st.polls % SESSION_CHECK_POLLS == 0 {
                match st.console.gate().console_session_peek(&st.token).await {
                    Ok(Some(_)) => {}
                    // Logged out or expired: say so once, then end the stream.
                    Ok(None) => {
                        st.ended = true;
                        st.pending.push_back(Event::default().event("ended").data("session ended"));
                        continue;
                    }
                    Err(_) => continue,
                }
            }
            let Ok(records) = st.console.gate().audit(&st.filter).await else { continue };
            if let Some(last) = records.last() {
                st.filter.after_seq = Some(last.seq);
            }
            for r in records.iter().filter(|r| st.f.keeps(r)) {
                let data = serde_json::to_string(&row(r)).unwrap_or_default();
                st.pending.push_back(Event::default().event("record").id(r.seq.to_string()).data(data));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// Every matching record, oldest first, one JSON object per line (the records as sealed: they
/// verify on their own).
async fn export(State(console): State<Console>, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let filter = match f.store_filter() {
        Ok(x) => x,
        Err(msg) => return console.page_error(StatusCode::BAD_REQUEST, &msg, Some(&authed)),
    };
    // The first page before answering: a store that cannot answer gets the error page.
    let page = AuditFilter { limit: Some(gate::store::AUDIT_PAGE), ..filter };
    let first = match console.gate().audit(&page).await {
        Ok(records) => records,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(&authed)),
    };
    // Then page after page, so the export's memory is a page, not the log.
    let gate = console.0.gate.clone();
    let pages = futures_util::stream::unfold(Some(first), move |records| {
        let (gate, page, f) = (gate.clone(), page.clone(), f.clone());
        async move {
            let records = records?;
            let last = records.last().map(|r| r.seq)?;
            let mut chunk = String::new();
            for r in records.iter().filter(|r| f.keeps(r)) {
                chunk.push_str(&gate::audit::to_json_line(r));
                chunk.push('\n');
            }
            let next = match gate.audit(&AuditFilter { after_seq: Some(last), ..page }).await {
                Ok(next) => Some(next),
                Err(e) => {
                    // The status is sent already: the export ends with a line that says why.
                    let error = serde_json::json!({"export_error": say(&e)});
                    chunk.push_str(&error.to_string());
                    chunk.push('\n');
                    None
                }
            };
            Some((Ok::<_, std::convert::Infallible>(chunk), next))
        }
    });
    let mut resp = axum::body::Body::from_stream(pages).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"jgate-audit.jsonl\""));
    resp
}
