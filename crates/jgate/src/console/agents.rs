//! The Agents pages: the list (status, keys, last call), create (the key shown once, with
//! ready-to-paste MCP client configurations and the `jgate exec` line), disable/enable, key
//! rotation, delete; and each agent's access matrix — rows are the capability groups with their
//! plain titles, cells Off / Read / Full use per controller (from `policy::access_matrix`, as
//! `jgate access`), grants refined with job patterns and parameter constraints, and the
//! effective-access explainer for a job (`policy::explain_job`). Every change is the CLI's `Gate`
//! function; nothing here decides access.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use gate::GateError;
use gate::catalog::Group;
use gate::policy::{self, Level, ParamConstraint};
use gate::store::now_ms;
use secrecy::ExposeSecret;
use serde::Serialize;

use super::controllers::{Done, percent_encode};
use super::{Authed, Console, Form, base_url, done, say};

pub fn routes() -> Router<Console> {
    Router::new().route("/agents", get(list).post(create)).route("/agents/{name}", get(one).post(change))
}

#[derive(Serialize)]
struct AgentItem {
    name: String,
    description: String,
    disabled: bool,
    created_ms: i64,
    valid_keys: usize,
    newest_key_ms: Option<i64>,
    expires_ms: Option<i64>,
    last_call_ms: Option<i64>,
}

async fn list_page(
    console: &Console,
    authed: &Authed,
    status: StatusCode,
    form: Option<&Form>,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let agents = match console.gate().agents().await {
        Ok(a) => a,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    let now = now_ms();
    let items: Vec<AgentItem> = agents
        .into_iter()
        .map(|(a, keys)| {
            let valid: Vec<_> = keys.iter().filter(|k| k.active_at(now) && !k.proxy_only).collect();
            AgentItem {
                valid_keys: valid.len(),
                newest_key_ms: valid.iter().map(|k| k.created_ms).max(),
                expires_ms: valid.iter().filter_map(|k| k.expires_ms).min(),
                last_call_ms: keys.iter().filter_map(|k| k.last_used_ms).max(),
                disabled: a.disabled_ms.is_some(),
                created_ms: a.created_ms,
                description: a.description,
                name: a.name,
            }
        })
        .collect();
    let values = form.map(|f| f.values(&["csrf"])).unwrap_or_default();
    console.render_status(
        status,
        "agents.html",
        Some(authed),
        minijinja::context! { nav => "agents", agents => items, form => values, error => error, notice => notice },
    )
}

async fn list(State(console): State<Console>, headers: HeaderMap, Query(q): Query<Done>) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    list_page(&console, &authed, StatusCode::OK, None, None, q.notice()).await
}

/// The page that shows a key once, with what to paste where.
fn key_page(
    console: &Console,
    authed: &Authed,
    headers: &HeaderMap,
    agent: &str,
    key: &str,
    key_id: &str,
    what: &str,
) -> Response {
    let base = base_url(headers);
    let mcp_url = format!("{base}/mcp");
    let cursor = serde_json::to_string_pretty(&serde_json::json!({
        "mcpServers": {"jgate": {"url": mcp_url, "headers": {"Authorization": format!("Bearer {key}")}}}
    }))
    .unwrap_or_default();
    let vscode = serde_json::to_string_pretty(&serde_json::json!({
        "servers": {"jgate": {"type": "http", "url": mcp_url, "headers": {"Authorization": format!("Bearer {key}")}}}
    }))
    .unwrap_or_default();
    let claude = format!("claude mcp add --transport http jgate {mcp_url} --header \"Authorization: Bearer {key}\"");
    let exec = format!("JGATE_AGENT_KEY={key} jgate exec --url {base} -- python my_jenkins_script.py");
    let stdio = serde_json::to_string_pretty(&serde_json::json!({
        "mcpServers": {"jgate": {"command": "jgate", "args": ["mcp"], "env": {"JGATE_AGENT_KEY": key}}}
    }))
    .unwrap_or_default();
    console.render(
        "agent_key.html",
        Some(authed),
        minijinja::context! { nav => "agents", agent => agent, key => key, key_id => key_id, what => what,
        mcp_url => mcp_url, cursor => cursor, vscode => vscode, claude => claude,
        exec => exec, stdio => stdio },
    )
}

async fn create(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let name = form.get("name").trim().to_string();
    let expires_ms = match form.opt("expires") {
        None => None,
        Some(e) => match crate::admin::parse_duration_ms(&e, "Expires after") {
            Ok(ms) if ms > 0 => Some(now_ms() + ms),
            Ok(_) => {
                return list_page(
                    &console,
                    &authed,
                    StatusCode::BAD_REQUEST,
                    Some(&form),
                    Some("Expires after must be longer than 0.".into()),
                    None,
                )
                .await;
            }
            Err(e) => {
                return list_page(&console, &authed, StatusCode::BAD_REQUEST, Some(&form), Some(e.to_string()), None)
                    .await;
            }
        },
    };
    match console.gate().create_agent(&authed.admin(), &name, form.get("description").trim(), expires_ms).await {
        Ok((agent, key)) => {
            key_page(&console, &authed, &headers, &agent.name, key.secret.expose_secret(), &key.key_id, "created")
        }
        Err(e) => list_page(&console, &authed, StatusCode::BAD_REQUEST, Some(&form), Some(say(&e)), None).await,
    }
}

#[derive(serde::Deserialize, Default)]
struct AgentQuery {
    done: Option<String>,
    name: Option<String>,
    job: Option<String>,
    controller: Option<String>,
}

#[derive(Serialize)]
struct MatrixRow {
    group: &'static str,
    title: &'static str,
    covers: &'static str,
    cells: Vec<MatrixCell>,
}

#[derive(Serialize)]
struct MatrixCell {
    controller: String,
    /// Off, Read, Full or Full with approval: the level on all jobs (what the select shows).
    all_jobs: &'static str,
    /// The most the agent may do somewhere here.
    best: &'static str,
    summary: String,
    patterns: Vec<String>,
}

#[derive(Serialize)]
struct GrantItem {
    id: i64,
    text: String,
    group_title: &'static str,
    controller: Option<String>,
}

#[derive(Serialize)]
struct Explained {
    controller: String,
    group: &'static str,
    title: &'static str,
    reads: &'static str,
    changes: &'static str,
    considered: Vec<String>,
    needs: Option<String>,
}

fn word(l: Level) -> &'static str {
    match l {
        Level::Off => "off",
        Level::Read => "read",
        Level::Full => "full",
    }
}

async fn agent_page(
    console: &Console,
    authed: &Authed,
    name: &str,
    status: StatusCode,
    q: &AgentQuery,
    error: Option<String>,
) -> Response {
    let gate = console.gate();
    let loaded = async {
        let row = gate.store().agent(name).await?;
        let Some(row) = row else { return Ok::<_, GateError>(None) };
        let grants = gate.grants(name).await?;
        let mut controllers: Vec<String> = gate.store().controllers().await?.into_iter().map(|c| c.name).collect();
        for g in &grants {
            if let Some(c) = &g.controller
                && !controllers.contains(c)
            {
                controllers.push(c.clone());
            }
        }
        Ok(Some((row, grants, controllers)))
    }
    .await;
    let (row, grants, controllers) = match loaded {
        Ok(Some(x)) => x,
        Ok(None) => {
            return console.page_error(
                StatusCode::NOT_FOUND,
                &format!("There is no agent '{name}'. The Agents page lists them."),
                Some(authed),
            );
        }
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    let cells = policy::access_matrix(&grants, name, &controllers);
    let matrix: Vec<MatrixRow> = Group::ALL
        .iter()
        .map(|&g| MatrixRow {
            group: g.as_str(),
            title: g.title(),
            covers: g.covers(),
            cells: controllers
                .iter()
                .map(|c| {
                    let cell = cells.iter().find(|x| x.group == g && &x.controller == c);
                    MatrixCell {
                        controller: c.clone(),
                        all_jobs: cell.map_or("off", |x| {
                            if x.all_jobs == Level::Full && x.all_jobs_approve {
                                "full-approval"
                            } else {
                                word(x.all_jobs)
                            }
                        }),
                        best: cell.map_or("off", |x| word(x.best)),
                        summary: cell.map_or_else(|| "Off".into(), |x| x.summary()),
                        patterns: cell
                            .map(|x| x.patterns.iter().map(|p| format!("{}: {}", p.jobs, p.level)).collect())
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect();
    let grant_items: Vec<GrantItem> = grants
        .iter()
        .map(|g| GrantItem {
            id: g.id,
            text: g.describe(),
            group_title: g.group.title(),
            controller: g.controller.clone(),
        })
        .collect();
    // The explainer: for a job, which grant decides in each group, and why.
    let mut explained = Vec::new();
    let mut explain_error = None;
    if let Some(job) = q.job.as_deref().map(str::trim).filter(|j| !j.is_empty()) {
        match policy::normalize_job_path(job) {
            Ok(path) => {
                let on: Vec<&String> = match q.controller.as_deref().filter(|c| !c.is_empty()) {
                    Some(c) => controllers.iter().filter(|x| x.as_str() == c).collect(),
                    None => controllers.iter().collect(),
                };
                for c in on {
                    for ja in policy::explain_job(&grants, name, c, &path) {
                        let verdict = |e: &Option<policy::Explanation>| match e {
                            None => "n/a",
                            Some(e) if e.decision.allowed => "allowed",
                            Some(_) => "denied",
                        };
                        let e = ja.read.as_ref().or(ja.write.as_ref());
                        let considered = match e {
                            Some(e) if e.considered.is_empty() => {
                                vec![format!("no grant of this group applies on {c}: denied by default")]
                            }
                            Some(e) => e
                                .considered
                                .iter()
                                .map(|k| {
                                    format!(
                                        "{}grant {} ({}) {}",
                                        if k.decides { "→ " } else { "" },
                                        k.grant.id,
                                        k.grant.describe(),
                                        k.why
                                    )
                                })
                                .collect(),
                            None => Vec::new(),
                        };
                        let needs = ja.write.as_ref().and_then(|w| w.decision.grant).and_then(|w| {
                            grants
                                .iter()
                                .find(|x| x.id == w && !x.params.is_empty() && x.level == Level::Full)
                                .map(|gr| gr.params.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                        });
                        explained.push(Explained {
                            controller: c.clone(),
                            group: ja.group.as_str(),
                            title: ja.group.title(),
                            reads: verdict(&ja.read),
                            changes: verdict(&ja.write),
                            considered,
                            needs,
                        });
                    }
                }
            }
            Err(e) => explain_error = Some(format!("The job '{job}' cannot be read: {e}")),
        }
    }
    let notice = q.done.as_deref().and_then(|d| super::notice(d, q.name.as_deref().unwrap_or(name)));
    let groups: Vec<(&str, &str)> = Group::ALL.iter().map(|g| (g.as_str(), g.title())).collect();
    let limits = match console.gate().agent_limits(name).await {
        Ok(l) => l,
        Err(e) => return console.page_error(StatusCode::SERVICE_UNAVAILABLE, &say(&e), Some(authed)),
    };
    console.render_status(
        status,
        "agent.html",
        Some(authed),
        minijinja::context! {
            nav => "agents", agent => name, description => row.description, disabled => row.disabled_ms.is_some(),
            controllers => controllers, matrix => matrix, grants => grant_items, groups => groups,
            job => q.job.clone().unwrap_or_default(), explain_controller => q.controller.clone().unwrap_or_default(),
            explained => explained, explain_error => explain_error, error => error, notice => notice,
            all_off => grants.is_empty(),
            limits_text => limits.describe(), calls_per_minute => limits.calls_per_minute,
            triggers_per_hour => limits.triggers_per_hour,
        },
    )
}

async fn one(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Response {
    let authed = match console.authed(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    agent_page(&console, &authed, &name, StatusCode::OK, &q, None).await
}

async fn change(State(console): State<Console>, headers: HeaderMap, Path(name): Path<String>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let authed = match console.authed_post(&headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let gate = console.gate();
    let admin = authed.admin();
    let here = format!("/console/agents/{}", percent_encode(&name));
    let result: Result<Response, String> = match form.get("action") {
        "disable" => {
            gate.disable_agent(&admin, &name).await.map(|_| done(&here, "disabled", &name)).map_err(|e| say(&e))
        }
        "enable" => gate.enable_agent(&admin, &name).await.map(|_| done(&here, "enabled", &name)).map_err(|e| say(&e)),
        "rotate" => {
            let overlap = match form.opt("overlap") {
                None => Ok(0),
                Some(o) => crate::admin::parse_duration_ms(&o, "Keep the old key for").map_err(|e| e.to_string()),
            };
            match overlap {
                Ok(overlap_ms) => match gate.rotate_agent_key(&admin, &name, None, overlap_ms, None).await {
                    Ok(r) => {
                        return key_page(
                            &console,
                            &authed,
                            &headers,
                            &name,
                            r.key.secret.expose_secret(),
                            &r.key.key_id,
                            "rotated",
                        );
                    }
                    Err(e) => Err(say(&e)),
                },
                Err(e) => Err(e),
            }
        }
        "delete" => match gate.delete_agent(&admin, &name, form.checked("with_grants")).await {
            Ok(_) => Ok(done("/console/agents", "deleted", &name)),
            Err(e) => Err(say(&e).replace(
                "delete the agent with --with-grants, which removes them too",
                "tick \"also remove its grants\" and press Delete again, which removes them too",
            )),
        },
        "set" => set_cell(&console, &authed, &name, &form).await.map(|_| done(&here, "set", &name)),
        "limits" => set_limits(&console, &authed, &name, &form).await.map(|_| done(&here, "limited", &name)),
        "grant" => add_grant(&console, &authed, &name, &form).await.map(|_| done(&here, "granted", &name)),
        "ungrant" => match form.get("id").parse::<i64>() {
            Ok(id) => match gate.grants(&name).await {
                // Only this agent's grants are removed from its page.
                Ok(gs) if gs.iter().any(|g| g.id == id) => {
                    gate.remove_grant(&admin, id).await.map(|_| done(&here, "ungranted", &name)).map_err(|e| say(&e))
                }
                Ok(_) => Err(format!("Agent {name} has no grant {id}.")),
                Err(e) => Err(say(&e)),
            },
            Err(_) => Err("Choose a grant to remove.".into()),
        },
        other => Err(format!("Unknown action '{other}'.")),
    };
    match result {
        Ok(r) => r,
        Err(msg) => {
            agent_page(&console, &authed, &name, StatusCode::BAD_REQUEST, &AgentQuery::default(), Some(msg)).await
        }
    }
}

fn group_of(form: &Form) -> Result<Group, String> {
    Group::parse(form.get("group")).ok_or_else(|| format!("Unknown capability group '{}'.", form.get("group")))
}

fn level_of(form: &Form) -> Result<Level, String> {
    form.get("level").parse::<Level>().map_err(|e| e.to_string())
}

/// A matrix cell's select: the level on all jobs of one group on one controller. The grants of
/// that group for that controller on all jobs are replaced by one of the chosen level (none for
/// Off, unless a grant for all controllers would still give more: then an explicit Off).
async fn set_cell(console: &Console, authed: &Authed, agent: &str, form: &Form) -> Result<(), String> {
    let gate = console.gate();
    let admin = authed.admin();
    let group = group_of(form)?;
    // "Full use, with approval": each change is held until an administrator approves it.
    let approve = form.get("level") == "full-approval";
    let level = if approve { Level::Full } else { level_of(form)? };
    let controller = form.opt("controller").ok_or("Choose a controller.")?;
    let grants = gate.grants(agent).await.map_err(|e| say(&e))?;
    for g in
        grants.iter().filter(|g| g.group == group && g.controller.as_deref() == Some(&controller) && g.jobs.is_none())
    {
        gate.remove_grant(&admin, g.id).await.map_err(|e| say(&e))?;
    }
    let remaining = gate.grants(agent).await.map_err(|e| say(&e))?;
    let cells = policy::access_matrix(&remaining, agent, std::slice::from_ref(&controller));
    let inherited = cells.iter().find(|c| c.group == group).map_or(Level::Off, |c| c.all_jobs);
    if level != Level::Off || inherited != Level::Off {
        gate.grant_with(&admin, agent, group, level, Some(&controller), None, Vec::new(), approve)
            .await
            .map_err(|e| say(&e))?;
    }
    Ok(())
}

/// The agent's rate limits (docs/limits.md), as `jgate agent limits` sets them: an empty field is
/// no limit.
async fn set_limits(console: &Console, authed: &Authed, agent: &str, form: &Form) -> Result<(), String> {
    let field = |name: &str, what: &str| -> Result<Option<u32>, String> {
        match form.opt(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
                format!("{what} must be a whole number (at least 1), or empty for no limit; '{v}' is not.")
            }),
        }
    };
    let limits = gate::limits::AgentLimits {
        calls_per_minute: field("calls_per_minute", "Calls per minute")?,
        triggers_per_hour: field("triggers_per_hour", "Triggers per hour")?,
    };
    console.gate().set_agent_limits(&authed.admin(), agent, limits).await.map(|_| ()).map_err(|e| {
        say(&e).replace("--calls-per-minute", "Calls per minute").replace("--triggers-per-hour", "Triggers per hour")
    })
}

/// A grant refined with a job pattern and parameter constraints.
async fn add_grant(console: &Console, authed: &Authed, agent: &str, form: &Form) -> Result<(), String> {
    let group = group_of(form)?;
    // "Full use, with approval": each change is held until an administrator approves it.
    let approve = form.get("level") == "full-approval";
    let level = if approve { Level::Full } else { level_of(form)? };
    let controller = form.opt("controller");
    let jobs = form.opt("jobs");
    let mut params = Vec::new();
    for line in form.lines("params") {
        params.push(line.parse::<ParamConstraint>().map_err(|e| e.to_string())?);
    }
    console
        .gate()
        .grant_with(&authed.admin(), agent, group, level, controller.as_deref(), jobs.as_deref(), params, approve)
        .await
        .map(|_| ())
        .map_err(|e| say(&e).replace("--param constraints", "Parameter constraints").replace("--jobs ", "Jobs "))
}
