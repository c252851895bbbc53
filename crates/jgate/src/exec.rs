//! `jgate exec`: runs a command (a Jenkins client, a community Jenkins MCP server, curl) with the
//! environment the integration guides give it — `JENKINS_URL`, `JENKINS_USER(NAME)`,
//! `JENKINS_(API_)TOKEN` — pointing at jgate's governed proxy with a short-lived token made for
//! this run. The command never sees the agent's long-lived key or any Jenkins token.
//!
//! The token comes from `jgate serve` (`POST /exec-tokens`, authenticated with the agent's key) and
//! is revoked (`DELETE /exec-tokens/<id>`) when the command exits; if `jgate exec` itself is
//! killed, the token expires after `--ttl`. Both ends are in the audit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use clap::Args;
use gate::{Gate, GateError};
use serde::Deserialize;
use serde_json::json;

/// Where the token endpoint is mounted on `jgate serve`.
pub const PREFIX: &str = "/exec-tokens";

#[derive(Args)]
pub struct ExecArgs {
    /// jgate's base URL (`jgate serve`); the command gets <url>/jenkins/<controller>/.
    #[arg(long, env = "JGATE_URL", default_value = "http://127.0.0.1:8765")]
    url: String,
    /// The controller to point the command at (needed when jgate has several).
    #[arg(long)]
    controller: Option<String>,
    /// The agent you expect the key to belong to (a check; the key decides).
    #[arg(long)]
    agent: Option<String>,
    /// How long the token lives at most, e.g. 30m, 1h (it is revoked when the command exits).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// A file holding the agent key (else JGATE_AGENT_KEY). Keys are never arguments.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    ttl_secs: u64,
}

impl TokenRequest {
    /// Exactly `{"ttl_secs": N}`: a JSON object (serde would also take `[N]` for a struct), no
    /// other field.
    fn parse(body: &[u8]) -> Option<TokenRequest> {
        match serde_json::from_slice::<serde_json::Value>(body).ok()? {
            v @ serde_json::Value::Object(_) => serde_json::from_value(v).ok(),
            _ => None,
        }
    }
}

/// `POST /exec-tokens` and `DELETE /exec-tokens/<key id>`, authenticated with the agent's full key.
pub fn routes(gate: Arc<Gate>) -> Router {
    Router::new().route("/", post(start)).route("/{key_id}", delete(end)).with_state(gate)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(|k| k.trim().to_string())
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn problem(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"error": message}))
}

fn gate_problem(e: GateError) -> Response {
    match e {
        GateError::BadKey(why) => problem(StatusCode::UNAUTHORIZED, &format!("invalid agent key: {why}")),
        GateError::Invalid(why) => problem(StatusCode::BAD_REQUEST, &why),
        e @ (GateError::AuditUnavailable(_) | GateError::Store(_)) => {
            problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        e => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn start(State(gate): State<Arc<Gate>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(key) = bearer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "send the agent's key as Authorization: Bearer <key>");
    };
    let Some(req) = TokenRequest::parse(&body) else {
        return problem(StatusCode::BAD_REQUEST, "send {\"ttl_secs\": N}");
    };
    let ttl_ms = i64::try_from(req.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let token = match gate.start_exec(&key, ttl_ms).await {
        Ok(t) => t,
        Err(e) => return gate_problem(e),
    };
    let controllers: Vec<String> = match gate.store().controllers().await {
        Ok(rows) => rows.into_iter().map(|c| c.name).collect(),
        Err(e) => return gate_problem(e.into()),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "agent": token.agent,
            "key_id": token.key.key_id,
            "token": gate::gate::expose(&token.key.secret),
            "expires_ms": token.expires_ms,
            "controllers": controllers,
        }),
    )
}

async fn end(State(gate): State<Arc<Gate>>, headers: HeaderMap, Path(key_id): Path<String>) -> Response {
    let Some(key) = bearer(&headers) else {
        return problem(StatusCode::UNAUTHORIZED, "send the agent's key as Authorization: Bearer <key>");
    };
    match gate.end_exec(&key, &key_id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(StatusCode::NOT_FOUND, "no live jgate exec token of this agent has that id"),
        Err(e) => gate_problem(e),
    }
}

/// `30m`, `1h`, `90s`, `2d` → seconds.
fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().with_context(|| format!("--ttl {s}: write a number and a unit, e.g. 30m or 1h"))?;
    let per = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => bail!("--ttl {s}: unknown unit '{other}' (use s, m, h or d)"),
    };
    Ok(n.saturating_mul(per))
}

#[derive(Deserialize)]
struct Minted {
    agent: String,
    key_id: String,
    token: String,
    controllers: Vec<String>,
}

/// Runs the command with a token made for it; returns the command's exit code.
pub async fn run(args: ExecArgs) -> anyhow::Result<i32> {
    let key = match &args.key_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the agent key from {}", path.display()))?
            .trim()
            .to_string(),
        None => std::env::var("JGATE_AGENT_KEY")
            .context("set JGATE_AGENT_KEY to the agent's key, or pass --key-file (keys are never arguments)")?,
    };
    let ttl_secs = parse_ttl(&args.ttl)?;
    let base = args.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let resp = http
        .post(format!("{base}{PREFIX}"))
        .bearer_auth(&key)
        .json(&json!({"ttl_secs": ttl_secs}))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach jgate at {base} (is `jgate serve` running there? set --url or JGATE_URL)")
        })?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        bail!("jgate refused to make a token for this run (HTTP {}): {message}", status.as_u16());
    }
    let minted: Minted =
        resp.json().await.context("jgate answered the token request in a shape this jgate does not read")?;
    let revoke = || async {
        let r = http.delete(format!("{base}{PREFIX}/{}", minted.key_id)).bearer_auth(&key).send().await;
        if !matches!(&r, Ok(resp) if resp.status().is_success()) {
            eprintln!(
                "jgate exec: could not revoke token {} now; it expires by itself (--ttl {})",
                minted.key_id, args.ttl
            );
        }
    };
    if let Some(expected) = &args.agent
        && *expected != minted.agent
    {
        revoke().await;
        bail!("the key belongs to agent {}, not {expected}", minted.agent);
    }
    let controller = match (&args.controller, minted.controllers.as_slice()) {
        (Some(c), list) if list.contains(c) => c.clone(),
        (Some(c), list) => {
            revoke().await;
            bail!("jgate has no controller named {c} (it has: {})", list.join(", "));
        }
        (None, [only]) => only.clone(),
        (None, list) => {
            revoke().await;
            bail!("jgate has several controllers ({}): choose one with --controller", list.join(", "));
        }
    };
    let jenkins_url = format!("{base}/jenkins/{controller}/");
    let (program, rest) = args.command.split_first().context("give the command to run after --")?;
    let mut child = std::process::Command::new(program);
    child
        .args(rest)
        // The long-lived key stays with jgate exec; the command gets the run's token only.
        .env_remove("JGATE_AGENT_KEY")
        .env("JENKINS_URL", &jenkins_url)
        .env("JENKINS_USER", &minted.agent)
        .env("JENKINS_USERNAME", &minted.agent)
        .env("JENKINS_TOKEN", &minted.token)
        .env("JENKINS_API_TOKEN", &minted.token)
        // mcp-jenkins and others read a "password": Jenkins accepts an API token there.
        .env("JENKINS_PASSWORD", &minted.token);
    let status = match tokio::task::spawn_blocking(move || child.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            revoke().await;
            bail!("cannot run {program}: {e}");
        }
        Err(e) => {
            revoke().await;
            bail!("cannot run {program}: {e}");
        }
    };
    revoke().await;
    // A command killed by a signal has no code: report failure.
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_people_write_them() {
        assert_eq!(parse_ttl("90s").ok(), Some(90));
        assert_eq!(parse_ttl("30m").ok(), Some(1800));
        assert_eq!(parse_ttl("1h").ok(), Some(3600));
        assert_eq!(parse_ttl("2d").ok(), Some(172_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
