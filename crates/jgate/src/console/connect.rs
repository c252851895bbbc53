//! The "Connect an agent" page: the MCP URL, configuration snippets per client, the Jenkins
//! proxy's base URL per controller, and the `jgate exec` example — with a placeholder where the
//! agent's key goes (keys are shown only once, when made).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use super::{Console, base_url, say};

pub fn routes() -> Router<Console> {
    Router::new().route("/connect", get(page))
}

async fn page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let controllers: Vec<String> = match console.gate().store().controllers().await {
        Ok(c) => c.into_iter().map(|c| c.name).collect(),
        Err(e) => {
            return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&gate::GateError::from(e)), Some(&authed));
        }
    };
    let base = base_url(&headers);
    let mcp_url = format!("{base}/mcp");
    let key = "<AGENT KEY>";
    let cursor = serde_json::to_string_pretty(&serde_json::json!({
        "mcpServers": {"jgate": {"url": mcp_url, "headers": {"Authorization": format!("Bearer {key}")}}}
    }))
    .unwrap_or_default();
    let vscode = serde_json::to_string_pretty(&serde_json::json!({
        "servers": {"jgate": {"type": "http", "url": mcp_url, "headers": {"Authorization": format!("Bearer {key}")}}}
    }))
    .unwrap_or_default();
    let stdio = serde_json::to_string_pretty(&serde_json::json!({
        "mcpServers": {"jgate": {"command": "jgate", "args": ["mcp"], "env": {"JGATE_AGENT_KEY": key}}}
    }))
    .unwrap_or_default();
    let claude = format!("claude mcp add --transport http jgate {mcp_url} --header \"Authorization: Bearer {key}\"");
    let proxies: Vec<(String, String)> =
        controllers.iter().map(|c| (c.clone(), format!("{base}/jenkins/{c}/"))).collect();
    let exec = format!("JGATE_AGENT_KEY={key} jgate exec --url {base} -- python my_jenkins_script.py");
    console.render(
        "connect.html",
        Some(&authed),
        minijinja::context! { nav => "connect", mcp_url => mcp_url, cursor => cursor, vscode => vscode,
        stdio => stdio, claude => claude, proxies => proxies, exec => exec },
    )
}
